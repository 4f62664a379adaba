"""The benchmark report: report.json (typed, versioned), report.md and the accuracy-vs-latency plot."""
