from webchat.cli.main import main

main()
