from singlerun.launch import main

main()
