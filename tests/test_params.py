import pytest

from birdclef.errors import ParameterError
from birdclef.params import parse_pairs


def test_pairs_keep_text_for_the_named_keys_and_read_literals_for_the_rest():
    got = parse_pairs(["epochs= 3", "smoothing_kernel=0.25,0.5,0.25", "n_files=4", "title=my run", "x=a=b"],
                      text={"epochs", "smoothing_kernel"})
    assert got == {"epochs": "3", "smoothing_kernel": "0.25,0.5,0.25", "n_files": 4, "title": "my run", "x": "a=b"}
    assert parse_pairs(["n_files=4"]) == {"n_files": "4"}  # no text keys given: every value stays text


@pytest.mark.parametrize("pair", ["epochs", "=3", " =3"])
def test_a_pair_without_a_key_or_value_sign_is_refused_by_name(pair):
    with pytest.raises(ParameterError, match="-p expects key=value"):
        parse_pairs([pair])
