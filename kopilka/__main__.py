from kopilka.cli.main import main

main()
