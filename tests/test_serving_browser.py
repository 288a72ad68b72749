"""The service's page in a real browser: headless Chromium driven by Selenium (chapter 11).

Needs Debian's ``chromium`` and ``chromium-driver`` packages; ``make test`` installs them when it can
(see the Makefile's ``browser`` target). Without them the test is skipped on a learner's machine and fails
in CI (``CI`` set), where the browser is part of the set-up. The screenshot lands in ``_build/screenshots/``.
"""

from __future__ import annotations

import pytest

from conftest import headless_chromium

from bigmodel_utils.paths import BUILD_DIR

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving-browser")]  # one browser for the module


@pytest.fixture(scope="module")
def browser():
    with headless_chromium("900,1200") as driver:
        yield driver


@pytest.fixture(scope="module")
def site(saved_models):
    from bigmodel_utils.serving import create_app, load_served_model
    from bigmodel_utils.serving.loadtest import running

    app = create_app([load_served_model(saved_models / "digits.keras", "digits"),
                      load_served_model(saved_models / "reviews.keras", "reviews")])
    with running(app, threads=4) as url:
        yield url


def test_draw_a_digit_and_type_a_review(browser, site):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(site + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Serving: digits"))
    cells = browser.find_elements(By.CSS_SELECTOR, "#grid div")
    assert len(cells) == 64
    for index in (3, 11, 19, 27, 35, 43, 51, 59, 4, 12):  # a vertical stroke: a 1, more or less
        ActionChains(browser).click(cells[index]).perform()
    browser.find_element(By.ID, "predict-digit").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "digit-answer"), "It is a"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#digit-bars .bar")) == 10
    assert "model version" in browser.find_element(By.ID, "digit-answer").text

    review = browser.find_element(By.ID, "review")
    review.send_keys("这本书写得非常好，值得一读。")
    browser.find_element(By.ID, "predict-review").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "review-answer"), "P(positive)"))

    folder = BUILD_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "serving_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    review.clear()  # an empty review: the page shows the service's message, not a crash
    browser.find_element(By.ID, "predict-review").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "review-answer"), "Error: instance 0: the text is empty"))


@pytest.fixture(scope="module")
def generation_site(saved_models, saved_gpt):
    """The service with a tiny GPT (chapter 14) made slow, 30 ms a token, so that a stream takes its time."""
    import time

    from bigmodel_utils.serving import create_app, load_served_generator, load_served_model
    from bigmodel_utils.serving.generation import GenerationRun
    from bigmodel_utils.serving.loadtest import running

    class SlowRun(GenerationRun):
        def _pick(self):
            inner = super()._pick()

            def slow(logits, rng):
                time.sleep(0.03)
                return inner(logits, rng)
            return slow

    gpt = load_served_generator(saved_gpt, "gpt", max_tokens=60)
    gpt.start = lambda request: SlowRun(gpt, request)
    app = create_app([load_served_model(saved_models / "digits.keras", "digits")], generators=[gpt])
    with running(app, threads=4) as url:
        yield url


def test_generated_text_streams_into_the_page(browser, site, generation_site):
    import json
    import urllib.request

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(site + "/")  # a service without a generator: no prompt box
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Serving: digits"))
    assert not browser.find_element(By.ID, "generate-section").is_displayed()

    browser.get(generation_site + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "gpt (version"))
    assert browser.find_element(By.ID, "generate-section").is_displayed()
    settings = {"max-tokens": "40", "temperature": "1.2", "top-k": "8", "top-p": "0.95", "seed": "11"}
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("这家店")
    for field, value in settings.items():
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.ID, "generate").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "generate-info"), "Finished:"))
    output = browser.find_element(By.ID, "generate-output")
    shown = output.get_attribute("textContent")

    same = {"prompt": "这家店", "max_tokens": 40, "temperature": 1.2, "top_k": 8, "top_p": 0.95, "seed": 11}
    request = urllib.request.Request(generation_site + "/models/gpt/generate", data=json.dumps(same).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert shown == answer["text"] and shown, (shown, answer)
    assert int(output.get_attribute("data-updates")) > 1, "the text arrived in pieces, as it was generated"
    info = browser.find_element(By.ID, "generate-info").text
    assert f"Finished: {answer['finish_reason']}" in info and "seed 11" in info

    temperature = browser.find_element(By.ID, "temperature")  # a bad setting: the service's message in the page
    temperature.clear()
    temperature.send_keys("hot")
    browser.find_element(By.ID, "generate").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "generate-info"), 'Error: "temperature" must be'))
    assert browser.find_element(By.ID, "generate-info").get_attribute("class") == "error"
