from modelrollout.main import main

main()
