"""Sessions that outlive a process: store-then-deliver journals, restore and leases, remote spectators."""
