from anpr_edge.cli import main

raise SystemExit(main())
