"""The gang protocol: a job's steps computed by replicas on the block workers, which exchange gradient
parts directly (through the step Redis or shared memory), and the coordinator's side that runs them in turns."""
