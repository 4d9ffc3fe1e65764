"""Zoo training losses: bad recipe arguments are named."""

import pytest

from adagen_env.errors import InvalidArgument
from adagen_env.zoo import continuous_loss


def test_unknown_time_sampling_is_named_with_the_choices():
    with pytest.raises(InvalidArgument, match=r"'beta'.*uniform.*logit-normal"):
        continuous_loss("flow", time_sampling="beta")
