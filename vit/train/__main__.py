from vit.train import loop

__doc__ = loop.__doc__  # `python -m vit.train` is the loop: --help shows its description and example

if __name__ == "__main__":
    loop.main()
