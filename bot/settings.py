"""Settings from the environment (12-factor), with a `.env` file read too; the README lists them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.errors import ConnectorSettingError
from connectors.redaction import Secret
from connectors.social_limits import NETWORKS

# The networks a connector posts to: the others have limits the agents know, but nothing would post there.
CONNECTED_NETWORKS = ("sandbox", "mastodon")

if TYPE_CHECKING:
    from agents.social_snippets import SocialSettings


class MissingSettingError(RuntimeError):
    """A command needs a setting that is not set; the message says which and how to set it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: str | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    database_url: str = Field(
        default="sqlite+aiosqlite:///./.aios/aios.db",
        validation_alias=AliasChoices("AIOS_DATABASE_URL", "DATABASE_URL"),
    )
    policy_file: str | None = Field(default=None, validation_alias="AIOS_POLICY_FILE")
    candidate_policy_file: str | None = Field(default=None, validation_alias="AIOS_CANDIDATE_POLICY_FILE")
    anthropic_api_key: str | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    dispatch_model: str = Field(default="claude-haiku-4-5", validation_alias="AIOS_DISPATCH_MODEL")
    agent_model: str = Field(default="claude-sonnet-4-6", validation_alias="AIOS_AGENT_MODEL")
    llm_prices: str | None = Field(default=None, validation_alias="AIOS_LLM_PRICES")
    weaviate_url: str | None = Field(default=None, validation_alias="WEAVIATE_URL")
    weaviate_api_key: str | None = Field(default=None, validation_alias="WEAVIATE_API_KEY")
    weaviate_grpc_port: int = Field(default=50051, ge=1, le=65535, validation_alias="WEAVIATE_GRPC_PORT")
    digest_channel: str | None = Field(default=None, validation_alias="AIOS_DIGEST_CHANNEL")
    digest_cron: str = Field(default="0 9 * * *", validation_alias="AIOS_DIGEST_CRON")
    shop_api_url: str | None = Field(default=None, validation_alias="AIOS_SHOP_API_URL")
    shop_api_key: str | None = Field(default=None, validation_alias="AIOS_SHOP_API_KEY")
    connector_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="AIOS_CONNECTOR_TIMEOUT_SECONDS"
    )
    # Local embeddings for memory search: "auto" uses the [embeddings] extra when it is installed.
    memory_embeddings: str = Field(
        default="auto", pattern="^(auto|on|off)$", validation_alias="AIOS_MEMORY_EMBEDDINGS"
    )
    # Work that records no owner (rows from before liveness leases) and is younger than this may belong to a
    # live replica, so recovery leaves it alone; work with an owner is taken as soon as its owner is gone.
    recovery_grace_seconds: float = Field(default=60.0, ge=0, validation_alias="AIOS_RECOVERY_GRACE_SECONDS")
    # The niceness `aios worker` runs at: planning is CPU-bound and can wait, so on a machine shared with a front
    # door the kernel runs the front door first when a request arrives (0 leaves the worker as it was started).
    # "idle" asks for Linux's SCHED_IDLE: the worker runs on CPU time its neighbours leave. Not the default: a
    # worker starved while it holds a lock (SQLite's writer lock, the audit chain's, an approval's row) holds up
    # whoever waits for it.
    worker_nice: int | Literal["idle"] = Field(default=10, validation_alias="AIOS_WORKER_NICE")

    # The team's time zone (an IANA name): scheduled posts and publishing windows are read and told in it.
    timezone: str = Field(default="UTC", validation_alias="AIOS_TIMEZONE")

    # Real connectors: each replaces its sandbox (or adds its actions) when its settings are set. Passed to the
    # connectors by their environment names (``connector_settings``); secrets are kept out of reprs.
    stripe_api_key: str | None = Field(default=None, validation_alias="STRIPE_API_KEY", repr=False)
    stripe_api_base: str | None = Field(default=None, validation_alias="STRIPE_API_BASE")
    shopify_shop: str | None = Field(default=None, validation_alias="SHOPIFY_SHOP")
    shopify_access_token: str | None = Field(
        default=None, validation_alias="SHOPIFY_ACCESS_TOKEN", repr=False
    )
    wordpress_url: str | None = Field(default=None, validation_alias="WORDPRESS_URL")
    wordpress_user: str | None = Field(default=None, validation_alias="WORDPRESS_USER")
    wordpress_app_password: str | None = Field(
        default=None, validation_alias="WORDPRESS_APP_PASSWORD", repr=False
    )
    smtp_url: str | None = Field(default=None, validation_alias="AIOS_SMTP_URL", repr=False)
    mail_from: str | None = Field(default=None, validation_alias="AIOS_MAIL_FROM")
    webhooks: str | None = Field(default=None, validation_alias="AIOS_WEBHOOKS", repr=False)
    mcp_config: str | None = Field(default=None, validation_alias="AIOS_MCP_CONFIG")
    mastodon_url: str | None = Field(default=None, validation_alias="MASTODON_URL")
    mastodon_access_token: str | None = Field(
        default=None, validation_alias="MASTODON_ACCESS_TOKEN", repr=False
    )

    # Social snippets proposed once a post goes live: to these networks, this long after it, linking here.
    social_post_url: str | None = Field(default=None, validation_alias="AIOS_SOCIAL_POST_URL")
    social_delay_minutes: int = Field(
        default=30, ge=0, le=10_080, validation_alias="AIOS_SOCIAL_DELAY_MINUTES"
    )
    social_networks: str = Field(default="", validation_alias="AIOS_SOCIAL_NETWORKS")

    @field_validator("worker_nice", mode="before")
    @classmethod
    def _niceness_or_idle(cls, value: object) -> object:
        text = str(value).strip().lower()
        if text == "idle":
            return text
        if re.fullmatch("0*[0-9]{1,2}", text) and int(text) <= 19:  # ASCII digits: isdigit() takes "١٢" too
            return int(text)
        raise ValueError("must be a niceness from 0 to 19, or idle")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "is not a time zone this system knows; use an IANA name like Europe/Berlin, America/New_York "
                "or UTC"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("social_networks")
    @classmethod
    def _known_networks(cls, value: str, info: ValidationInfo) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in NETWORKS]
        if unknown:
            raise ValueError(
                f"names {unknown[0]!r}; the networks are {', '.join(NETWORKS)} (comma-separated)"
            )
        unconnected = [name for name in names if name not in CONNECTED_NETWORKS]
        if unconnected:
            raise ValueError(
                f"names {unconnected[0]}, which the bot cannot post to yet (no connector); the networks it posts "
                f"to are {', '.join(CONNECTED_NETWORKS)}"
            )
        if len(set(names)) != len(names):
            raise ValueError("names a network twice")
        if names and not info.data.get("social_post_url") and not info.data.get("wordpress_url"):
            raise ValueError(
                "needs AIOS_SOCIAL_POST_URL too: your posts' address with {slug} where the slug goes, e.g. "
                "https://blog.example.com/{slug}"
            )
        elsewhere = [name for name in names if name != "mastodon"]
        if info.data.get("mastodon_url") and elsewhere:
            raise ValueError(
                f"names {elsewhere[0]}, but with MASTODON_URL set social posts go to Mastodon, the one network "
                "the bot then posts to: leave only mastodon"
            )
        return ",".join(names)

    @field_validator("social_post_url")
    @classmethod
    def _post_address(cls, value: str | None) -> str | None:
        if value is not None and (not re.match(r"^https?://[^/\s]+", value) or "{slug}" not in value):
            raise ValueError("must be an http(s) address with {slug} where the post's slug goes")
        return value

    def social(self) -> SocialSettings | None:
        """Where snippets of a live post go; None when no network is set."""
        from agents.social_snippets import SocialSettings

        networks, post_url = self._networks(), self._post_url()
        if not networks or post_url is None:
            return None
        return SocialSettings(networks, timedelta(minutes=self.social_delay_minutes), post_url)

    def _networks(self) -> tuple[str, ...]:
        return tuple(name for name in self.social_networks.split(",") if name)

    def _post_url(self) -> str | None:
        """AIOS_SOCIAL_POST_URL, else the WordPress site's ``?name=<slug>``, which finds a post by its slug."""
        if self.social_post_url is None and self.wordpress_url:
            return self.wordpress_url.rstrip("/") + "/?name={slug}"
        return self.social_post_url

    def connector_settings(self) -> dict[str, str]:
        """The connectors' settings that are set, by their environment names (connectors know no Settings)."""
        return {
            str(field.validation_alias): value
            for name, field in type(self).model_fields.items()
            if name in _CONNECTOR_FIELDS and (value := getattr(self, name))
        }

    def secrets(self) -> list[Secret]:
        """Every configured secret, named by its setting: what the redactor keeps out of records, chat
        messages and logs. A malformed structured setting counts as a secret whole."""
        found = [
            Secret(name, value, user)
            for name, value, user in (
                ("SLACK_BOT_TOKEN", self.slack_bot_token, None),
                ("SLACK_SIGNING_SECRET", self.slack_signing_secret, None),
                ("SLACK_APP_TOKEN", self.slack_app_token, None),
                ("ANTHROPIC_API_KEY", self.anthropic_api_key, None),
                ("WEAVIATE_API_KEY", self.weaviate_api_key, None),
                ("AIOS_SHOP_API_KEY", self.shop_api_key, None),
                ("STRIPE_API_KEY", self.stripe_api_key, None),
                ("SHOPIFY_ACCESS_TOKEN", self.shopify_access_token, None),
                ("WORDPRESS_APP_PASSWORD", self.wordpress_app_password, self.wordpress_user),
                ("MASTODON_ACCESS_TOKEN", self.mastodon_access_token, None),
            )
            if value
        ]
        found += _url_password("AIOS_SMTP_URL", self.smtp_url)
        found += _url_password("AIOS_DATABASE_URL", self.database_url)
        found += _webhook_secrets(self.webhooks)
        found += _mcp_secrets(self.mcp_config)
        return found

    def require(self, *names: str) -> None:
        """Fail with one message listing every missing setting a command needs."""
        missing = [name for name in names if not getattr(self, _FIELD_FOR[name])]
        if missing:
            raise MissingSettingError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. Set "
                f"{'it' if len(missing) == 1 else 'them'} in the environment or in a .env file "
                "(the Slack app's Basic Information and OAuth & Permissions pages show the values)."
            )


_CONNECTOR_FIELDS = frozenset(
    {
        "stripe_api_key",
        "stripe_api_base",
        "shopify_shop",
        "shopify_access_token",
        "wordpress_url",
        "wordpress_user",
        "wordpress_app_password",
        "smtp_url",
        "mail_from",
        "webhooks",
        "mcp_config",
        "mastodon_url",
        "mastodon_access_token",
    }
)

_FIELD_FOR = {
    "SLACK_BOT_TOKEN": "slack_bot_token",
    "SLACK_SIGNING_SECRET": "slack_signing_secret",
    "SLACK_APP_TOKEN": "slack_app_token",
}


def _url_password(setting: str, url: str | None) -> list[Secret]:
    try:
        parts = urlsplit(url or "")
        password, user = parts.password, parts.username
    except ValueError:
        return [Secret(setting, url or "")]
    if not password:
        return []
    # As written in the URL and as sent: either form may be echoed.
    decoded = Secret(setting, unquote(password), unquote(user) if user else None)
    return [decoded, Secret(setting, password)] if decoded.value != password else [decoded]


def _webhook_secrets(value: str | None) -> list[Secret]:
    """Each webhook's signing secret and URL (which often holds a token in its path)."""
    if not value:
        return []
    from connectors.webhooks import SETTING, parse_webhooks

    try:
        webhooks = parse_webhooks(value).values()
    except ConnectorSettingError:
        return [Secret(SETTING, value)]
    return [Secret(SETTING, secret) for webhook in webhooks for secret in (webhook.secret, webhook.url)]


def _mcp_secrets(path: str | None) -> list[Secret]:
    """The credentials in the MCP servers' entries: ``env`` values and headers whose names say they hold one
    (``GITHUB_TOKEN``, ``Authorization``; a header's credentials also without their scheme, as in ``Bearer
    <token>``), and a URL's password and query values. Not every value: an ``env`` value such as
    ``production`` or a ``Content-Type`` would otherwise be blanked out of every log line and message. Imported
    only here: the MCP SDK is slow to import."""
    if not path:
        return []
    from connectors.mcp_tools import SETTING, load_config

    try:
        servers = load_config(path)
    except ConnectorSettingError:
        return []  # the connector refuses to start and says why
    values: list[str] = []
    for server in servers:
        values += [v for k, v in (server.env or {}).items() if _CREDENTIAL_NAME.search(k)]
        headers = [v for k, v in (server.headers or {}).items() if _CREDENTIAL_NAME.search(k)]
        values += [*headers, *(header.split(" ", 1)[1] for header in headers if " " in header.strip())]
        if server.url:
            url = urlsplit(server.url)
            values += [url.password or "", *(v for _, v in parse_qsl(url.query))]
    return [Secret(SETTING, value) for value in values if value]


# A word of the name (GITHUB_TOKEN, X-Api-Key, Authorization, PGPASSWORD), not inside another (GIT_AUTHOR_NAME).
_CREDENTIAL_NAME = re.compile(
    r"(?<![a-z])(?:pg|api)?(?:key|token|secret|pass(?:word|wd)?|pwd|auth(?:orization)?|credentials?|cookie|"
    r"signature|dsn)s?(?![a-z])",
    re.IGNORECASE,
)
