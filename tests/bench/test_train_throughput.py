import warnings

import torch  # noqa: F401  (imported first, as in the bench: its import adds warning filters of its own)

from bench import train_throughput


def test_micro_batches_of_one_keep_the_examples_an_optimizer_step():
    assert train_throughput.passes("nockpt-varlen-nocast-liger-mb1", 4) == (1, 4)
    assert train_throughput.passes("nockpt-varlen-nocast-liger-mb1-drop", 2) == (1, 2)
    assert train_throughput.passes("nockpt-varlen-nocast-liger-drop", 4) == (4, 1)


def test_each_place_the_host_waited_is_counted_and_warnings_are_as_before_after():
    def waits():
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)

    before = warnings.showwarning, warnings.filters[:]
    with train_throughput.SyncCounter() as counter:
        for _ in range(3):
            waits()
        waits()  # the same function, another line that called it
    assert (warnings.showwarning, warnings.filters) == before
    counts = sorted(r["count"] for r in counter.report())
    assert counts == [1, 3]
    assert all(
        r["where"].startswith(f"{__file__.rsplit('/', 1)[-1]}") or "waits" in r["where"] for r in counter.report()
    )
