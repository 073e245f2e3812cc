#!/usr/bin/python3
"""k8s_sim_ctl: tests/sim/k8s_sim.py run in-process, with the simulator's
command line (--port P --certdir D --token T, same ready line), plus control
lines on stdin so a C test can use the simulator's test hooks:

    fault none                     sim.set_fault(None)
    fault SPEC [MATCH [TIMES]]     sim.set_fault(SPEC, match=MATCH, times=N)
    token T                        sim.token = T (rotate the accepted token)

Each control line is answered on stdout with "ctl-ok N" (N counts from 1).
The simulator stops when stdin closes or on SIGTERM.
"""
import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "sim"))
import k8s_sim  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--certdir", required=True)
    ap.add_argument("--token", required=True)
    a = ap.parse_args()
    sim = k8s_sim.K8sSim(port=a.port, certdir=a.certdir, token=a.token)
    sim.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening on https://127.0.0.1:%d" % sim.port, flush=True)
    n = 0
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "fault":
                spec = None if words[1] == "none" else words[1]
                match = words[2] if len(words) > 2 else None
                times = int(words[3]) if len(words) > 3 else None
                sim.set_fault(spec, match=match, times=times)
            elif words[0] == "token":
                sim.token = words[1]
            n += 1
            print("ctl-ok %d" % n, flush=True)
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
