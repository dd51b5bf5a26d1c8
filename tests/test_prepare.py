"""The steps before the lock, for a batch, ahead of the deciding thread (docsieve/prepare.py)."""

import pytest


def test_running_ahead_keeps_order_raises_producer_errors_and_never_waits_on_a_stuck_source() -> None:
    import threading

    from docsieve.prepare import RunAhead

    assert list(RunAhead(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("broken input")

    got = []
    with pytest.raises(ValueError, match="broken input"):
        for item in RunAhead(failing()):
            got.append(item)
    assert got == [1]

    # A consumer that stops early (a store error, say) is not held up by a source waiting for input.
    release = threading.Event()

    def stuck():
        yield "first"
        release.wait(30)  # stdin that never ends
        yield "late"

    ahead = RunAhead(stuck())
    assert next(ahead) == "first"
    closing = threading.Thread(target=ahead.close)
    closing.start()
    closing.join(10)
    stopped = not closing.is_alive()
    release.set()
    assert stopped  # close() returned although the producer was still waiting for input
