"""The migration scripts of the central database, one revision per file, in
order; each one upgrades the schema and says how to go back."""
