from shimmfa.cli import main

main()
