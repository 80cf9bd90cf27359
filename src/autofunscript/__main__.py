from autofunscript.cli import main

main()
