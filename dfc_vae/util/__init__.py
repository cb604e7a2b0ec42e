"""Small shared pieces every layer may use: errors and the one-line exit, atomic files, argument
types and range checks, allowed values, device and precision, locks, report tables, pictures."""
