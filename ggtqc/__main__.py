from ggtqc.cli import main

main()
