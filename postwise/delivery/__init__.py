"""Getting mail out: transports, and the local capture server of the embedded mode."""
