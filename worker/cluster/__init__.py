"""`zdl cluster up` on one machine: the launcher, the processes it starts and stops, and the Redis ACL files."""
