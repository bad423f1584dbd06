import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from singlerun.compactjson import dumps

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@given(st.dictionaries(st.text(), VALUES, max_size=6))
def test_same_text_as_json_dumps(value):
    assert dumps(value) == json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def test_tuples_are_arrays_and_the_rest_is_refused():
    assert dumps((1, "a", None)) == '[1,"a",null]'
    for bad in (float("nan"), float("inf"), object()):
        with pytest.raises((ValueError, TypeError)):
            dumps(bad)
