"""Shared test plumbing: run unittest cases and print "N passed, N failed"."""
import os
import socket
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on loopback."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Result(unittest.TextTestResult):
    pass


def main():
    """Run the calling module's tests; print one line per test and the total."""
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromModule(sys.modules["__main__"])
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=_Result)
    res = runner.run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    # A SkipTest raised in setUpClass counts as skipped without being run,
    # so never let the subtraction go below zero.
    passed = max(0, res.testsRun - failed - len(res.skipped))
    for case, _ in res.failures + res.errors:
        print("FAIL %s" % case.id())
    for case, why in res.skipped:
        print("SKIP %s: %s" % (case.id(), why))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
