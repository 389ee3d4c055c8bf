"""The check of tests/conftest.py: what one test leaves changed is named and put back."""
import signal

import global_state


def test_a_blocked_or_ignored_sigint_is_named_and_put_back():
    before = global_state.snapshot()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        changed = global_state.changes(before)
        assert [line.split(":")[0] for line in changed] == ["the main thread's blocked signals",
                                                           "the handler of SIGINT"]
        assert "[<Signals.SIGINT: 2>]" in changed[0]
        global_state.restore(before)
        assert global_state.changes(before) == []
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert signal.getsignal(signal.SIGINT) is previous
    finally:
        global_state.restore(before)
