"""`zdl cluster up/status/down` on one machine: the launcher, the processes it starts and stops, the record of
them that `down` reads, and the Redis ACL files."""
