"""``python -m snakestream.demo OUT_DIR [--shape Z Y X]``: write the demo pair."""
from snakestream.demo.scene import main

if __name__ == "__main__":
    main()
