"""Word lists for the synthetic account (unicode on purpose: names, cities, properties)."""

from __future__ import annotations

FIRST_NAMES = (
    "Ada", "José", "Zoë", "Ørjan", "Siobhán", "Ngọc", "Łukasz", "Ana", "Mia", "Noah", "Liam",
    "Chloé", "Mateo", "Björk", "Ömer", "Aiko", "李", "Дмитрий", "Fatima", "Olivia", "Émile",
    "Saoirse", "Kai", "Priya", "Lucía", "Jonas", "Elif", "Tomás", "Hana", "Ravi",
)
LAST_NAMES = (
    "Lovelace", "García", "Müller", "Nguyễn", "Kowalski", "O'Brien", "Smith", "Dubois",
    "Rossi", "Sørensen", "Yılmaz", "Tanaka", "王", "Иванов", "Haddad", "Johnson", "Fernández",
    "Schmidt", "Silva", "Kim", "Patel", "Novák", "Lindqvist", "Costa", "Murphy",
)
DOMAINS = ("example.com", "mail.example.org", "exämple.net", "shop.example.io", "example.co.uk")
ORGS = ("Acme Corp", "Globex", "Initech", "Umbrella GmbH", "Stark Industries", "Wayne & Söhne")
TITLES = ("Buyer", "CEO", "Engineer", "Marketing Lead", "Designer", "Student", "Chef")
CITIES = (
    ("Boston", "Massachusetts", "United States", "02110", "America/New_York", 42.3601, -71.0589),
    ("München", "Bayern", "Germany", "80331", "Europe/Berlin", 48.1372, 11.5756),
    ("São Paulo", "São Paulo", "Brazil", "01000-000", "America/Sao_Paulo", -23.5505, -46.6333),
    ("Kraków", "Małopolskie", "Poland", "30-001", "Europe/Warsaw", 50.0647, 19.945),
    ("東京", "Tokyo", "Japan", "100-0001", "Asia/Tokyo", 35.6762, 139.6503),
    ("Austin", "Texas", "United States", "73301", "America/Chicago", 30.2672, -97.7431),
    ("Dublin", "Leinster", "Ireland", "D01", "Europe/Dublin", 53.3498, -6.2603),
    ("Montréal", "Québec", "Canada", "H2X", "America/Toronto", 45.5017, -73.5673),
)
COLORS = ("red", "blue", "grün", "violet", "amarillo", "黒")
PRODUCTS = (
    ("Classic Tee", 24.0), ("Hoodie ☕", 59.5), ("Sneakers Ω", 119.99), ("Socks 3-pack", 12.0),
    ("Café Mug", 15.25), ("Backpack", 89.0), ("Sunglasses", 45.0), ("Gift Card €50", 50.0),
    ("Yoga Mat", 35.0), ("Water Bottle", 19.9),
)
CATEGORIES = ("Apparel", "Shoes", "Accessories", "Home", "Gifts", "Sale")
CAMPAIGN_WORDS = (
    "Spring Sale", "Black Friday – Early Access 🎉", "Weekly Newsletter", "New Arrivals",
    "Back in Stock", "VIP Rewards", "Summer Clearance ☀️", "Holiday Gift Guide",
    "Flash Sale", "Product Launch", "Win-back", "Cyber Monday", "Fête des Mères",
)
FLOW_NAMES = (
    "Welcome Series", "Abandoned Cart Reminder", "Browse Abandonment", "Post-Purchase Thank You",
    "Win-back Flow", "Birthday Flow 🎂", "Price Drop Alert", "VIP Upgrade", "Sunset Unengaged",
    "Back in Stock Flow",
)
LIST_NAMES = (
    "Newsletter", "VIP Customers", "SMS Subscribers", "Preview List", "Wholesale Leads",
    "Event Attendees", "Beta Testers", "Kundenliste DE", "Liste française",
)
SEGMENT_NAMES = (
    "Engaged (30 days)", "Repeat Buyers", "High CLV", "Churn Risk", "Never Purchased",
    "Opened Last Campaign", "Big Spenders > €500", "Lapsed Customers",
)
TAG_NAMES = ("Promo", "Newsletter", "Seasonal", "Automation", "VIP", "Test", "Q4", "Évènement")
TEMPLATE_NAMES = (
    "Base Newsletter", "Promo Hero", "Transactional Receipt", "Plain Text", "Product Grid",
    "Holiday Card", "Welcome Template", "Minimal",
)
