"""Reports from the run database: leaderboards (`table`), exports (`export`), PNG figures
(`plots`) and fabricated databases for benchmarks and tests (`fabricate`). No torch."""
