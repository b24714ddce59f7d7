"""The agent's redaction of secret values in a task's output (agent/redact.py)."""

from __future__ import annotations

from safeboard.agent.redact import MARK, Redactor


def test_every_occurrence_at_the_edges_and_between() -> None:
    redactor = Redactor(["hunter22"])
    assert redactor.redact("hunter22") == MARK
    assert redactor.redact("hunter22 and hunter22") == f"{MARK} and {MARK}"
    assert redactor.redact("xhunter22hunter22y") == f"x{MARK}{MARK}y"
    assert redactor.redact("hunter2") == "hunter2"  # not the value
    assert redactor.redact("") == ""


def test_longest_first_and_overlapping_values() -> None:
    redactor = Redactor(["abcd", "abcdefgh", "fghijk"])
    # The longer value is taken out whole, not leaving "efgh" behind.
    assert redactor.redact("--abcdefgh--") == f"--{MARK}--"
    # Two values that overlap: what either covers goes, as one mark ("ijk" of the
    # second must not stay behind).
    assert redactor.redact("abcdefghijk") == MARK
    assert redactor.redact("xfghijk abcd") == f"x{MARK} {MARK}"
    assert Redactor(["aaaa"]).redact("aaaaaa!") == f"{MARK}!"  # a value overlapping itself
    # The replacement never makes a new match: values are looked for in the line as written.
    assert Redactor(["dact", "[red"]).redact("[re[redact") == f"[re{MARK}"


def test_short_values_are_not_redacted() -> None:
    redactor = Redactor(["abc", "", "x", "long enough"])
    assert redactor.redact("abc x long enough") == f"abc x {MARK}"
    assert not Redactor(["abc"])
    assert Redactor(["abcd"])


def test_a_value_with_newlines_is_redacted_line_by_line() -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBg\r\nab\n-----END KEY-----"
    redactor = Redactor([pem])
    assert redactor.redact("MIIEvQIBADANBg") == MARK
    assert redactor.redact("ab") == "ab"  # too short alone


def test_a_cut_line_loses_a_value_begun_at_its_end() -> None:
    redactor = Redactor(["s3cr3t-value"])
    assert redactor.redact_cut("prefix s3cr3t-va") == f"prefix {MARK}"
    assert redactor.redact_cut("prefix s3cr3t-value") == f"prefix {MARK}"
    assert redactor.redact_cut("nothing here") == "nothing here"
    assert Redactor().redact_cut("s3cr") == "s3cr"


def test_repr_hides_the_values() -> None:
    assert "hunter22" not in repr(Redactor(["hunter22"]))
