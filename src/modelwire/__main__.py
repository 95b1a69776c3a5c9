from modelwire.cli.main import app

app(prog_name="modelwire")
