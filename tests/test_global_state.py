"""The check of tests/conftest.py: what one test leaves changed is named and put back."""
import os
import signal

import global_state


def test_a_blocked_or_ignored_sigint_is_named_and_put_back():
    before = global_state.snapshot()
    # the other value of each, whatever pytest started with (a shell's background job ignores SIGINT)
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    signal.pthread_sigmask(signal.SIG_UNBLOCK if blocked else signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_DFL if handler == signal.SIG_IGN else signal.SIG_IGN)
    try:
        changed = global_state.changes(before)
        assert [line.split(":")[0] for line in changed] == ["the main thread's blocked signals",
                                                           "the handler of SIGINT"]
        assert "<Signals.SIGINT: 2>" in changed[0]
        global_state.restore(before)
        assert global_state.changes(before) == []
        assert (signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])) == blocked
        assert signal.getsignal(signal.SIGINT) == handler
    finally:
        global_state.restore(before)


def test_a_variable_left_in_the_environment_is_named_and_put_back(monkeypatch):
    monkeypatch.delenv("MTL_LEASE_TIMEOUT", raising=False)
    before = global_state.snapshot()
    os.environ["MTL_LEASE_TIMEOUT"] = "0.1"
    try:
        assert global_state.changes(before) == ["the environment: $MTL_LEASE_TIMEOUT None → '0.1'"]
        global_state.restore(before)
        assert "MTL_LEASE_TIMEOUT" not in os.environ and global_state.changes(before) == []
    finally:
        os.environ.pop("MTL_LEASE_TIMEOUT", None)
