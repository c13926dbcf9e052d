"""Running a sweep's grid in several processes: run options, shards, leases, workers and launchers."""
