"""On-demand benchmarks (never part of CI pass/fail); see benchmarks/README.md."""
