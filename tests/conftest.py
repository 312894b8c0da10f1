"""Fixtures shared by the test files."""

import pytest
import torch

from helpers.model import GPT, GPTConfig
from helpers.runtime import num_threads

#: The fields of the smallest GPT the tests use unless a test module sets its own ``TINY_GPT`` (a
#: GPTConfig). Kept as plain data: building a GPTConfig while this file is imported would turn any
#: error in GPTConfig (as a planted bug in a mutation run) into a failure to load the test suite.
TINY_GPT_FIELDS = dict(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is fastest, and on a busy machine more threads only wait for each other.

    A module opts in for all its tests with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    with num_threads(1):
        yield


@pytest.fixture
def tiny_gpt(request):
    """A factory: ``tiny_gpt(seed=0, **fields)`` builds a small GPT whose weights depend only on ``seed``.

    The config is the test module's ``TINY_GPT`` if it defines one, else the one above, with ``fields``
    changed (e.g. ``tiny_gpt(dropout=0.5)``). The model is in training mode, as any new module.
    """
    base = getattr(request.module, "TINY_GPT", None)
    base = TINY_GPT_FIELDS if base is None else base.to_dict()

    def make(seed: int = 0, **fields) -> GPT:
        torch.manual_seed(seed)
        return GPT(GPTConfig(**(base | fields)))

    return make
