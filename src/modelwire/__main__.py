from modelwire.cli.entry import main

main()
