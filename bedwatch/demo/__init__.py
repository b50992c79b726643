"""`bedwatch demo`: broker, database, service and a scripted ward in one command."""
