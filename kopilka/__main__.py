from kopilka.cli import main

main()
