from ebmflow.cli import main

raise SystemExit(main())
