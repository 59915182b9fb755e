from mgmvae.cli import main

raise SystemExit(main())
