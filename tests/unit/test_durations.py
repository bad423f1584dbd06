import pytest

from singlerun.durations import format_age, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("250ms", 0.25),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("2d", 172800),
        ("1m30s500ms", 90.5),
        (" 10S ", 10),
    ],
)
def test_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "5x", "-1", "1h 30m", "1.s", "m5", "5mm"])
def test_parse_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (192, "3m12s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (90000, "1d1h"),
        (-5, "0s"),
    ],
)
def test_format_age(seconds, text):
    assert format_age(seconds) == text
