from singlerun.cli import main

raise SystemExit(main())
