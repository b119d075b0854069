"""Seed tasks for procedural prompts, written for spar (none taken from any benchmark).

Each family is a task form with its own subjects; ``seed_tasks()`` expands them into a stable,
ordered list of task strings (well over 300). Splits are made over seed tasks, so ``train`` and
``heldout`` never share one.
"""

from __future__ import annotations

import hashlib

FAMILIES: dict[str, tuple[str, list[str]]] = {
    "story": ("Write a short story about {}.", [
        "a lighthouse keeper who finds a message in a bottle", "a robot learning to bake bread",
        "two strangers stuck in a lift", "a town where it never stops snowing", "a cat that runs a bookshop",
        "the last day of a summer camp", "a violin that plays by itself", "a lost hiker and a friendly fox",
        "a child who can talk to trees", "a delivery drone that goes off course", "a chess match in a park",
        "a grandmother's secret recipe", "a night train across the desert", "an astronaut's first hour on Mars",
        "a street musician's lucky day", "a detective who is afraid of the dark",
        "a garden gnome that wants to travel", "a ferry captain on her final voyage",
        "a village that trades in stories instead of money", "a clockmaker who repairs time itself",
    ]),
    "explain": ("Explain {} to someone with no background in the subject.", [
        "how vaccines train the immune system", "why the sky looks blue", "how a bicycle stays upright",
        "what inflation is", "how search engines rank pages", "why leaves change colour in autumn",
        "how a refrigerator keeps food cold", "what a black hole is", "how compound interest works",
        "why we have seasons", "how noise-cancelling headphones work", "what DNA does",
        "how airplanes stay in the air", "why bread rises", "how a credit score is calculated",
        "what machine learning is", "how tides are caused", "how recycling plastic works",
        "what a blockchain is", "how the heart pumps blood", "why ice floats on water",
        "how solar panels make electricity", "what photosynthesis is", "how a compiler turns code into a program",
    ]),
    "email": ("Write an email {}.", [
        "to a landlord about a leaking kitchen tap", "inviting colleagues to a farewell lunch",
        "asking a professor for a letter of recommendation", "to a customer apologising for a late delivery",
        "to a neighbour about a shared fence", "declining a job offer politely",
        "to a team announcing a new project lead", "asking a client to confirm a meeting time",
        "to a friend you have not spoken to in years", "requesting a refund for a broken kettle",
        "to parents about a school trip", "thanking a mentor after graduation",
        "to a supplier asking for a price list", "to your manager asking for a day off",
        "to a gym cancelling a membership", "welcoming a new member to a book club",
        "to a hotel asking about accessible rooms", "reminding a group about an overdue report",
    ]),
    "list": ("List some ideas for {}.", [
        "a rainy Sunday at home", "a budget-friendly birthday party", "reducing food waste in a household",
        "a first date in a small town", "learning a new language quickly", "decorating a tiny balcony",
        "keeping kids busy on a long car ride", "a team-building day at work", "a vegetarian barbecue",
        "saving money on groceries", "a science fair project", "a themed dinner party",
        "staying active while working from home", "a weekend trip without a car", "a community clean-up day",
        "gifts for someone who loves gardening", "a podcast about local history", "a school fundraiser",
    ]),
    "summarize": ("Summarize the following text: {}", [
        "The city council met on Tuesday to discuss a proposal for a new cycle lane along the river. "
        "Supporters argued it would cut traffic and make commuting safer, while shop owners worried about "
        "losing parking spaces. The council agreed to run a six-month trial before a final vote.",
        "Honeybees communicate the location of flowers through a movement called the waggle dance. "
        "The angle of the dance shows the direction relative to the sun, and its length signals the "
        "distance. Other bees follow the dancer closely to learn the route.",
        "A small bakery in the harbour district doubled its sales after it began selling bread in the "
        "evening instead of the morning. The owner noticed that most customers passed by after work, "
        "so she shifted baking hours and added a discount for the last hour before closing.",
        "Researchers tracked sleep in two hundred teenagers for a school year. Students whose classes "
        "started an hour later slept about forty minutes more each night and reported feeling less "
        "tired, although their grades changed only slightly.",
        "The museum reopened after a two-year renovation that added a rooftop garden, a children's "
        "wing and better lighting for its collection of old maps. Entry remains free on the first "
        "Sunday of every month.",
        "A volunteer group repaired over three hundred bicycles last year and gave them to people who "
        "needed transport to work. The group meets every Saturday in an old garage and teaches anyone "
        "who wants to learn basic repairs.",
        "The storm brought strong winds and heavy rain to the coast overnight. Several roads were "
        "closed because of fallen trees, and ferries were cancelled until the afternoon. No injuries "
        "were reported.",
        "A new study suggests that houseplants remove far less indoor air pollution than once believed. "
        "To match the effect of opening a window, a room would need hundreds of plants per square metre.",
        "The chess club at the community centre has grown from five to forty members in a year. "
        "Beginners play on Mondays, and a tournament for all levels takes place at the end of each month.",
        "Local farmers are trying a new method of planting that leaves the soil undisturbed. Early "
        "results show less erosion and lower fuel costs, though yields in the first season were similar.",
        "An online library lets people borrow tools such as drills, ladders and sewing machines for a "
        "week at a time. Members pay a small yearly fee, and the library says most tools are used every day.",
        "The airline announced that passengers will be able to choose their seats for free from next "
        "month. The change follows complaints that families were being split up unless they paid extra.",
    ]),
    "advice": ("Give advice to {}.", [
        "a student starting university in a new city", "someone preparing for their first marathon",
        "a new manager leading a team of former peers", "a person who wants to start journaling",
        "someone nervous about public speaking", "a first-time dog owner", "a freelancer setting their prices",
        "a teenager looking for a summer job", "someone moving abroad for work", "a person learning to cook at forty",
        "someone who keeps procrastinating on important tasks", "a couple planning a small wedding",
        "a beginner who wants to start running", "someone returning to work after a long break",
        "a parent whose child is afraid of swimming", "a volunteer organising their first charity event",
    ]),
    "poem": ("Write a poem about {}.", [
        "the first snowfall of winter", "a busy morning market", "an old wooden bridge", "the smell of rain",
        "a friendship that survived distance", "the quiet of a library", "city lights at midnight",
        "a kite on a windy hill", "the last train home", "a grandmother's hands", "waves against a harbour wall",
        "a sunflower field in August", "learning to ride a bike", "a forgotten umbrella", "the moon over a lake",
        "a cup of tea on a cold day", "migrating birds", "an empty playground at dusk",
    ]),
    "product": ("Write product copy for {}.", [
        "a solar-powered phone charger", "a handmade ceramic mug", "a foldable electric scooter",
        "a subscription box of world snacks", "noise-cancelling earbuds for runners", "a smart plant pot",
        "a waterproof hiking backpack", "a kids' coding board game", "a reusable beeswax food wrap",
        "an ergonomic office chair", "a portable espresso maker", "a weighted sleep blanket",
        "a bamboo toothbrush set", "a language-learning app for travellers", "a compact home projector",
        "a bird feeder with a built-in camera",
    ]),
    "compare": ("Compare {}.", [
        "trains and planes for a 500 km trip", "renting and buying a home", "paper books and e-readers",
        "cats and dogs as pets", "working from home and working in an office", "tea and coffee",
        "learning from videos and learning from books", "city life and country life",
        "electric cars and petrol cars", "team sports and solo sports", "public and private schools",
        "saving and investing for a young adult", "handwritten notes and typed notes", "summer and winter holidays",
    ]),
    "describe": ("Describe {}.", [
        "a perfect Saturday morning", "the view from a mountain top", "a crowded night market",
        "your ideal workspace", "a thunderstorm rolling in over fields", "the inside of an old bookshop",
        "a festival in a small village", "a quiet beach in early autumn", "a futuristic city in 2100",
        "a kitchen during a family holiday dinner", "the sounds of a forest at night", "a train station at rush hour",
        "a garden after the rain", "the first day at a new job",
    ]),
    "review": ("Write a review of {}.", [
        "a neighbourhood pizza place", "a mystery novel you could not put down", "a budget hotel near an airport",
        "a pair of running shoes after three months", "a museum's new dinosaur exhibit", "a free photo-editing app",
        "a weekend cooking class", "a second-hand electric guitar", "a long-distance bus journey",
        "a board game for families", "a podcast about space", "a walking tour of an old town",
    ]),
    "speech": ("Write a short speech {}.", [
        "for a best friend's wedding", "to open a community garden", "thanking volunteers at a food bank",
        "for a retirement party of a favourite teacher", "to welcome new students to a school",
        "to motivate a football team at half time", "accepting an award for local journalism",
        "to launch a neighbourhood library", "at the opening of a new bridge", "for a graduation ceremony",
    ]),
    "howto": ("Explain step by step how to {}.", [
        "change a flat bicycle tyre", "make a simple tomato sauce", "set up a monthly budget",
        "plant tulip bulbs", "prepare for a job interview", "back up photos from a phone",
        "write a cover letter", "clean a cast-iron pan", "start a compost bin", "learn to juggle three balls",
        "make a paper airplane that flies far", "brew tea properly", "organise a closet", "train a puppy to sit",
        "fix a squeaky door", "build a simple bird house",
    ]),
    "dialogue": ("Write a dialogue between {}.", [
        "a barista and a customer who cannot decide", "a teacher and a student who forgot their homework",
        "two astronauts repairing a satellite", "a tourist asking for directions and a local",
        "a chef and a food critic", "a grandparent and a grandchild about old phones",
        "two rival gardeners before a flower show", "a librarian and a noisy visitor",
        "a mechanic and a worried car owner", "two friends planning a road trip",
    ]),
    "social": ("Write a social media post {}.", [
        "announcing a bakery's new opening hours", "celebrating a team's first win of the season",
        "inviting people to a charity run", "sharing a tip for saving energy at home",
        "promoting a second-hand clothes swap", "thanking followers for ten thousand likes",
        "about a lost cat in the neighbourhood", "about a new hiking trail in the area",
        "for a library's summer reading challenge", "announcing a small band's first concert",
    ]),
    "letter": ("Write a letter {}.", [
        "to your future self ten years from now", "to a favourite author", "to a local newspaper about bus services",
        "to a pen pal in another country", "to the mayor about street lighting", "to a childhood friend",
        "to a company praising its customer service", "to a younger sibling starting school",
    ]),
    "recipe": ("Write a recipe for {}.", [
        "a quick vegetable stir-fry", "banana pancakes", "a lentil soup for a cold evening", "homemade lemonade",
        "a simple chocolate mug cake", "a summer fruit salad", "garlic roasted potatoes", "overnight oats",
        "a tomato and mozzarella salad", "vegetable fried rice",
    ]),
    "opinion": ("Share your opinion on {}.", [
        "whether homework should be banned", "four-day working weeks", "phones in classrooms",
        "cities without cars", "learning cursive handwriting", "tipping in restaurants",
        "school uniforms", "remote meetings versus in-person meetings", "reality television",
        "daylight saving time", "zoos in the modern world", "paying for news online",
    ]),
    "plan": ("Make a plan for {}.", [
        "a three-day visit to a capital city", "studying for a final exam in two weeks",
        "a small vegetable garden", "getting fit in eight weeks", "moving to a new flat",
        "a surprise party for a coworker", "reading twelve books in a year", "a family camping weekend",
        "learning to play the guitar", "a zero-waste week",
    ]),
    "bio": ("Write a short biography of {}.", [
        "a fictional inventor of the umbrella", "an imaginary marathon champion from a mountain village",
        "a made-up chef who opened the first floating restaurant", "a fictional astronaut who grew plants in orbit",
        "an invented poet who wrote only about bridges", "a fictional teacher who founded a school for adults",
        "an imaginary painter who only used the colour blue", "a fictional engineer who designed silent trains",
    ]),
    "question": ("Answer this question: {}", [
        "Why do cats purr?", "What makes a good neighbour?", "How long should a power nap last?",
        "Is it better to rent a car or use taxis on holiday?", "What should I look for in a used bicycle?",
        "Why is the ocean salty?", "How can I tell if an egg is fresh?", "What is the best way to learn to type fast?",
        "Why do we yawn?", "How do I choose a good watermelon?", "What does a city planner do?",
        "Why do onions make people cry?", "How often should I water a cactus?", "What is a good first camera?",
        "Why do some people sneeze in sunlight?", "How do I politely end a phone call?",
        "What is the difference between weather and climate?", "How can a small shop compete with big chains?",
        "Why do boats float?", "What should go in a first-aid kit for hiking?",
    ]),
    "slogan": ("Come up with a slogan and a short pitch for {}.", [
        "a neighbourhood repair café", "an electric bike rental service", "a children's science museum",
        "a tea shop that only sells local herbs", "a mobile library van", "a dog-walking business",
        "a night school for adults", "a startup that rents out camping gear", "a farmers' market",
        "a language exchange meetup", "a second-hand furniture store", "a music festival by the sea",
    ]),
}


def seed_tasks() -> list[tuple[str, str]]:
    """(family, task) for every seed task, in a fixed order."""
    return [(fam, form.format(subject)) for fam, (form, subjects) in FAMILIES.items() for subject in subjects]


def split_of(task: str, heldout_share: float = 0.2) -> str:
    """Stable split by a hash of the task text, so splits never share a seed task."""
    h = int(hashlib.sha256(task.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < heldout_share else "train"
