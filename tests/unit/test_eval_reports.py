"""`--report` PNGs: the plot writer produces a real, readable PNG with every panel drawn."""

import numpy as np

from app.routing.plots import Panel, write_report


def test_report_writes_a_valid_png(tmp_path) -> None:
    x = np.linspace(0, 1, 50)
    panels = [
        Panel("quality vs cost", "share to large", "PGR", {"router": (x, np.sqrt(x)), "length": (x, x ** 1.2)},
              points={"threshold": (0.4, 0.63)}, diagonal=True),
        Panel("precision vs hit rate", "hit rate", "precision", {"gate 0.80": (x, 1 - 0.3 * x)}, ylim=(0.5, 1.02)),
    ]
    out = write_report(tmp_path / "sub" / "report.png", "test report", panels)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import matplotlib.image as mpimg

    image = mpimg.imread(out)
    height, width = image.shape[:2]
    assert width == 1100 and height == 460  # 5.5 in per panel x 2, 4.6 in, at 100 dpi
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
