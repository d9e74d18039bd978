"""What is swept: shapes, named profiles, the modules timed and their correctness checks."""
