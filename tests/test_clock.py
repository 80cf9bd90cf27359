import pytest

from autofunscript.clock import format_clock, parse_clock


@pytest.mark.parametrize("seconds, whole, tenths", [
    (0.0, "0:00", "0:00.0"), (59.96, "0:59", "1:00.0"), (83.25, "1:23", "1:23.2"),
    (3723.5, "1:02:03", "1:02:03.5"), (-2.0, "0:00", "0:00.0"),
])
def test_clock_readings_cut_to_the_second_or_round_to_the_tenth(seconds, whole, tenths):
    assert format_clock(seconds) == whole
    assert format_clock(seconds, tenths=True) == tenths


@pytest.mark.parametrize("seconds", [0.0, 9.5, 83.0, 3723.5])
def test_a_clock_reading_parses_back(seconds):
    assert parse_clock(format_clock(seconds, tenths=True)) == pytest.approx(seconds)
