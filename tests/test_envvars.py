"""Settings from environment variables: values, defaults and errors naming the variable."""

import pytest

from deplodock_dagster.envvars import env_flag, env_list, env_positive, env_text
from deplodock_dagster.errors import ConfigError


def test_values_and_defaults():
    env = {"A": "  x ", "N": "2.5", "I": "3", "F": "Yes", "L": "a, ,b,", "BLANK": " "}
    assert env_text(env, "A") == "x" and env_text(env, "BLANK") is None
    assert env_positive(env, "N") == 2.5 and env_positive(env, "I", int) == 3
    assert env_positive(env, "MISSING", int, 7) == 7
    assert env_flag(env, "F") and not env_flag(env, "A") and not env_flag(env, "MISSING")
    assert env_list(env, "L") == ("a", "b") and env_list(env, "MISSING") is None


@pytest.mark.parametrize("raw, problem", [("ten", "is not a number"), ("0", "must be positive"),
                                          ("-3", "must be positive"), ("1.5", "is not a number")])
def test_bad_numbers_name_the_variable(raw, problem):
    with pytest.raises(ConfigError, match=rf"DEPLODOCK_PORT='{raw}' {problem}"):
        env_positive({"DEPLODOCK_PORT": raw}, "DEPLODOCK_PORT", int)
