"""An executed action's inverse is built from the result it recorded; a result no valid inverse can be built
from means no undo is offered, never an error in the "Done" message or the undo."""

from __future__ import annotations

from connectors.actions import CmsPublish, CmsUnpublish, WordpressUpdate, safe_inverse

EDIT = WordpressUpdate(slug="spring-lookbook", title="Spring", body="<p>new</p>")


def test_an_edit_is_undone_by_putting_back_the_replaced_fields() -> None:
    previous = {"title": "Old", "body": "<p>old</p>", "excerpt": "untouched"}
    assert safe_inverse(EDIT, {"previous": previous}) == WordpressUpdate(
        slug="spring-lookbook", title="Old", body="<p>old</p>"
    )


def test_an_untitled_post_gets_its_empty_title_back() -> None:
    undo = safe_inverse(EDIT, {"previous": {"title": "", "body": "<p>old</p>"}})
    assert undo == WordpressUpdate(slug="spring-lookbook", title="", body="<p>old</p>")


def test_an_old_body_past_the_limit_offers_no_undo() -> None:
    assert safe_inverse(EDIT, {"previous": {"title": "Old", "body": "x" * 50_001}}) is None


def test_a_result_recording_none_of_the_changed_fields_offers_no_undo() -> None:
    assert safe_inverse(EDIT, {"previous": {"excerpt": "only this"}}) is None
    assert safe_inverse(EDIT, {"previous": "not a mapping"}) is None


def test_actions_whose_inverse_needs_no_result_still_have_one() -> None:
    assert safe_inverse(CmsPublish(slug="spring-lookbook"), {}) == CmsUnpublish(slug="spring-lookbook")
