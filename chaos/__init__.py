"""`make chaos`: the fault matrix. Every fault is injected into the real handlers on the local stack
(moto, the template's resources, the simulated provider, webhook receivers on loopback), many executions
run through it, and the invariants of issue 13 are checked once they converge: nothing stuck, nothing
lost, nothing free (chaos.invariants). One row per fault; a non-zero exit on any violation."""
