"""The per-step fan-out protocol: the coordinator's gradient that cuts a step into block groups, and the
block loops on the block workers that compute them."""
