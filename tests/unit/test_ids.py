"""Every id safeboard mints, on the server and in the SDK, is ``ids.new_id``'s: 32
lowercase hex digits that the server's id rules accept (issue 12)."""

from __future__ import annotations

from safeboard.ids import is_id, new_id
from safeboard.sdk.batches import to_batches
from safeboard.sdk.uploads import artifact_record


def test_new_ids_are_ids_and_differ() -> None:
    minted = {new_id() for _ in range(100)}
    assert len(minted) == 100
    assert all(is_id(value) for value in minted)


def test_the_sdk_mints_batch_and_artifact_ids_with_new_id() -> None:
    batches = to_batches([(0, 1.7e9, {"loss": 0.5})] * 2)
    assert all(is_id(batch.batch_id) for batch in batches)
    assert is_id(artifact_record(name="model.bin", kind="model")["id"])
