"""Form bodies are read exactly as the standard library reads them, whatever the text."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from hypothesis import given
from hypothesis import strategies as st

from bot.form_body import form_fields

# Text made mostly of what form bodies are made of, so that the interesting cases come up often.
form_text = st.text(alphabet=st.sampled_from("ab=&+%2F0Ff9 é\x00;"), max_size=60) | st.text(max_size=60)


@given(form_text)
def test_any_text_is_read_as_parse_qsl_reads_it(text: str) -> None:
    assert form_fields(text) == dict(parse_qsl(text, keep_blank_values=True))


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=8))
def test_encoded_fields_are_read_back(fields: list[tuple[str, str]]) -> None:
    assert form_fields(urlencode(fields)) == dict(fields)


def test_a_slash_command_body() -> None:
    body = "command=%2Faios&text=remember+payload+sizes+%3E+1%25&user_id=U0ALICE&empty=&bare"
    assert form_fields(body) == {
        "command": "/aios",
        "text": "remember payload sizes > 1%",
        "user_id": "U0ALICE",
        "empty": "",
        "bare": "",
    }
