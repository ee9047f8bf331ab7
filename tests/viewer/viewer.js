// Draws a real raw screenshot as the page, with the selected date's image for the current heading
// in the original's crop box (591,0)-(1261,670); the capture crops exactly that box back out.
"use strict";
const BOX = [591, 0, 1261, 670];

function load(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot load " + src));
    img.src = src;
  });
}

async function main() {
  const pano = new URLSearchParams(window.location.search).get("pano");
  const data = await (await fetch("/data?pano=" + encodeURIComponent(pano))).json();
  const background = await load(data.background);
  const frames = await Promise.all(data.frames.map(row => Promise.all(row.map(load))));
  const ctx = document.getElementById("pano").getContext("2d");
  let date = 0, heading = 0;
  function draw() {
    ctx.drawImage(background, 0, 0);
    ctx.drawImage(frames[date][heading], BOX[0], BOX[1], BOX[2] - BOX[0], BOX[3] - BOX[1]);
  }
  const strip = document.querySelector(".time-machine");
  data.dates.forEach((label, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.addEventListener("click", () => { date = i; draw(); });
    strip.appendChild(button);
  });
  document.querySelector("button.rotate").addEventListener("click", () => {
    heading = (heading + 1) % frames[date].length;
    draw();
  });
  draw();
}

main();
