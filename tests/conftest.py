"""Shared pytest configuration and fixtures."""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")


def pytest_xdist_auto_num_workers(config):
    """Workers for ``-n auto`` (pyproject's addopts): one per core this process may use, at
    most 4. Each worker imports torch and keras (about 1 GB), and fastrnn's and torch's own
    thread teams already use every core inside a test. None where pytest-benchmark is asked to
    time (``--benchmark-only`` / ``--benchmark-enable``): it times only in the pytest process
    itself, alone on the cores."""
    if config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 4))


def pytest_configure(config):
    """A plain run calls the pytest-benchmark cases (``tests/test_bench_cells.py``) once each,
    as tests; ``--benchmark-only`` or ``--benchmark-enable`` times them."""
    opt = config.option
    if hasattr(opt, "benchmark_disable") and not (opt.benchmark_only or opt.benchmark_enable):
        opt.benchmark_disable = True


@pytest.fixture
def arch(request):
    """Run a test once per SIMD path this machine has (selected for the test, then restored);
    paths the CPU lacks are not generated (see pytest_generate_tests below)."""
    from fastrnn import _kernels

    old = _kernels.get_arch()
    _kernels.set_arch(request.param)
    yield request.param
    _kernels.set_arch(old)


def pytest_generate_tests(metafunc):
    if "arch" in metafunc.fixturenames:
        from fastrnn import _kernels

        metafunc.parametrize("arch", _kernels.available_arches(), indirect=True)
