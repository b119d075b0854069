from spar.cli import app

app()
