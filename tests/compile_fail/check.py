#!/usr/bin/env python3
"""Compiles a source that must not compile and checks the diagnostics.

    check.py EXPECTED_TEXT -- COMPILER ARGS... SOURCE

Passes when the compiler fails, its output contains EXPECTED_TEXT, and it
reports exactly one error (one readable message, not pages of template
output).
"""
import subprocess
import sys

sep = sys.argv.index('--')
expected = sys.argv[1]
cmd = sys.argv[sep + 1:]
r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
out = r.stdout
errors = [l for l in out.splitlines() if ' error: ' in l or l.startswith('error: ')]
print(out)
if r.returncode == 0:
    sys.exit('compiled, but must not')
if expected not in out:
    sys.exit('the expected message is missing: ' + expected)
if len(errors) != 1:
    sys.exit('%d errors instead of 1' % len(errors))
print('one error, with the expected message')
